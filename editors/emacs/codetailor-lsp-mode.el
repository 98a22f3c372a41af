;;; codetailor-lsp-mode.el --- Codetailor completions with lsp-mode -*- lexical-binding: t; -*-

;; Codetailor as an add-on server through lsp-mode, next to the language's
;; own server (pyright, gopls...).  On lsp-mode 9.0.1+ its completions show
;; as ghost text (`lsp-inline-completion-mode'); on older lsp-mode they come
;; as one `completion-at-point' candidate.
;;
;; Load it from your init file:
;;   (load "/path/to/codetailor/editors/emacs/codetailor-lsp-mode.el")
;;   (setq codetailor-command '("/path/to/codetailor/.venv/bin/codetailor" "serve"))
;;
;; While a suggestion shows: C-<return> accepts it, C-n / C-p cycle, C-g dismisses.
;; M-x lsp-inline-completion-display asks for one now.
;;
;; Inserting a candidate runs its `codetailor.accepted' command, sent to
;; Codetailor's server only.  While the model loads, `completion-at-point'
;; says "Codetailor: loading MODEL".  Where point comes to rest on another
;; line or in another buffer, the server hears of it (`codetailor/cursor')
;; and warms the window there.
;;
;; Next edits (codetailor-next-edit.el): after an edit, Codetailor's guess of
;; the next one near point is drawn (old text struck, new text after); TAB
;; jumps there, TAB again applies it, C-g dismisses it.

;;; Code:

(require 'lsp-mode)
(require 'codetailor (expand-file-name
                     "codetailor" (file-name-directory
                                   (or load-file-name (bound-and-true-p byte-compile-current-file)
                                       buffer-file-name))))

(require 'codetailor-next-edit (expand-file-name
                                "codetailor-next-edit" (file-name-directory
                                                        (or load-file-name (bound-and-true-p byte-compile-current-file)
                                                            buffer-file-name))))

(defun codetailor-lsp--command-present-p ()
  "Whether `codetailor-command' exists; if not, say how to fix it."
  (let ((problem (codetailor--command-problem)))
    (when problem (message "%s" problem))
    (not problem)))

(defun codetailor-lsp--workspace ()
  "The current buffer's Codetailor workspace, or nil."
  (cl-find-if (lambda (workspace)
                (eq (lsp--client-server-id (lsp--workspace-client workspace)) 'codetailor))
              (lsp-workspaces)))

(defun codetailor-lsp--accepted (action)
  "Run ACTION, a `codetailor.accepted' Command, on Codetailor's server only.
Asynchronous: the insertion does not wait for the answer."
  (when-let ((workspace (codetailor-lsp--workspace)))
    (with-lsp-workspace workspace
      (lsp-request-async "workspace/executeCommand"
                         (list :command codetailor-accepted-command
                               :arguments (or (codetailor--get action :arguments) ["completion"]))
                         #'ignore))))

(lsp-register-client
 (make-lsp-client
  :new-connection (lsp-stdio-connection #'codetailor--command
                                        #'codetailor-lsp--command-present-p)
  :activation-fn (lambda (_file-name mode) (provided-mode-derived-p mode 'prog-mode))
  :add-on? t                            ; alongside the language's own server
  :priority -2
  :server-id 'codetailor
  :action-handlers (let ((handlers (make-hash-table :test #'equal)))
                     (puthash codetailor-accepted-command #'codetailor-lsp--accepted handlers)
                     handlers)
  :initialization-options (lambda () (codetailor--initialization-options))))

;;; completion-at-point: the loading line, and Codetailor's candidate inserted whole

(defvar codetailor-lsp--ready (make-hash-table :test #'eq :weakness 'key)
  "Workspaces whose model `codetailor.status' said is ready.")

(defun codetailor-lsp--ready-p (workspace)
  "Whether WORKSPACE's model is ready; if not, say so in the echo area."
  (or (gethash workspace codetailor-lsp--ready)
      (let* ((status (with-lsp-workspace workspace
                       (ignore-errors
                         (lsp-request "workspace/executeCommand"
                                      '(:command "codetailor.status")))))
             (line (codetailor--status-line status)))
        (if line
            (progn (message "%s" line) nil)
          (puthash workspace t codetailor-lsp--ready)))))

(defun codetailor-lsp--candidate-p (candidate)
  "Whether CANDIDATE (a completion string from lsp-mode) is Codetailor's item."
  (let ((item (get-text-property 0 'lsp-completion-item candidate)))
    (equal (codetailor--get (codetailor--get item :command) :command)
           codetailor-accepted-command)))

(defun codetailor-lsp--sole-is-exact (table)
  "TABLE, where a sole Codetailor candidate equal to the input is an exact match.
lsp-mode 8 never answers test-completion, so `completion-at-point' inserted
the candidate's label but never ran the exit function that applies its edit
and runs its `codetailor.accepted' command."
  (lambda (probe pred action)
    (or (funcall table probe pred action)
        (and (eq action 'lambda)
             (let ((all (funcall table probe pred t)))
               (and all (null (cdr all)) (equal (car all) probe)
                    (codetailor-lsp--candidate-p (car all))))))))

(defun codetailor-lsp--completion-at-point (capf &rest args)
  "Around `lsp-completion-at-point', where Codetailor serves the buffer.
While its model loads it says so; the buffer's other servers still complete."
  (let ((workspace (codetailor-lsp--workspace)))
    (if (null workspace)
        (apply capf args)
      (when (or (codetailor-lsp--ready-p workspace) (cdr (lsp-workspaces)))
        (pcase (apply capf args)
          (`(,start ,end ,table . ,props)
           `(,start ,end ,(codetailor-lsp--sole-is-exact table) ,@props))
          (result result))))))

(advice-add 'lsp-completion-at-point :around #'codetailor-lsp--completion-at-point)

;;; The cursor: where point rests (codetailor.el)

(defun codetailor-lsp--report-cursor ()
  "Tell Codetailor's server, if it serves this buffer, where point is."
  (when-let ((workspace (and (bound-and-true-p lsp-mode) (codetailor-lsp--workspace))))
    (with-lsp-workspace workspace
      (lsp-notify codetailor-cursor-notification (lsp--text-document-position-params)))
    t))

(codetailor--follow-cursor #'codetailor-lsp--report-cursor)

;;; Next edits (codetailor-next-edit.el), to Codetailor's server only

(defmacro codetailor-lsp--with-ours (&rest body)
  "Run BODY with Codetailor's workspace as the only one, if it serves this buffer."
  (declare (indent 0))
  `(when-let ((workspace (codetailor-lsp--workspace)))
     (with-lsp-workspace workspace ,@body)))

(defconst codetailor-lsp--next-edit-backend
  (list
   :params (lambda () (list :textDocument (lsp--versioned-text-document-identifier)
                            :position (lsp--cur-position)))
   :version (lambda () lsp--cur-version)
   :request (lambda (params callback)
              (codetailor-lsp--with-ours
                (lsp-request-async codetailor-next-edit-method params callback
                                   :mode 'detached :error-handler #'ignore)))
   :notify (lambda (method params) (codetailor-lsp--with-ours (lsp-notify method params)))
   :execute (lambda (command)
              (codetailor-lsp--with-ours
                (lsp-request-async "workspace/executeCommand"
                                   (list :command (codetailor--get command :command)
                                         :arguments (or (codetailor--get command :arguments) []))
                                   #'ignore :mode 'detached :error-handler #'ignore)))
   :region (lambda (range) (lsp--range-to-region range)))
  "The next-edit backend over lsp-mode; it asks Codetailor's workspace only.")

(defun codetailor-lsp--next-edit-mode ()
  "In `lsp-mode-hook': next edits in lsp-mode's buffers (asked of Codetailor only)."
  (if (bound-and-true-p lsp-mode)
      (codetailor-next-edit-enable codetailor-lsp--next-edit-backend)
    (codetailor-next-edit-disable)))

(add-hook 'lsp-mode-hook #'codetailor-lsp--next-edit-mode)

;;; Ghost text: lsp-mode 9.0.1+

(defvar lsp-inline-completion-idle-delay)
(require 'lsp-inline-completion nil t)
(if (fboundp 'lsp-inline-completion-mode)
    (progn
      ;; Ask for a suggestion after 0.3 s of idle time in buffers lsp-mode manages.
      (setq lsp-inline-completion-idle-delay 0.3)
      (add-hook 'lsp-mode-hook #'lsp-inline-completion-mode))
  (message "Codetailor: ghost text needs lsp-mode 9.0.1+; %s"
           "completion-at-point offers Codetailor's completion meanwhile"))

(provide 'codetailor-lsp-mode)
;;; codetailor-lsp-mode.el ends here
