;;; codetailor-eglot.el --- Codetailor completions with Eglot -*- lexical-binding: t; -*-

;; Eglot talks to one server per buffer, so with Eglot Codetailor replaces the
;; language's own server; its completion arrives through `completion-at-point'
;; as one candidate (the server's textDocument/completion).  Prefer
;; codetailor-lsp-mode.el to keep your language server (and, on lsp-mode
;; 9.0.1+, get ghost text).
;;
;; Load it from your init file, then M-x eglot in a buffer:
;;   (load "/path/to/codetailor/editors/emacs/codetailor-eglot.el")
;;   (setq codetailor-command '("/path/to/codetailor/.venv/bin/codetailor" "serve"))
;;
;; What it adds to Eglot, for Codetailor's server only:
;; - the server runs `codetailor-command' (read at each start) with
;;   `codetailor-settings' as initializationOptions;
;; - `codetailor-settings' join `eglot-workspace-configuration' as its
;;   :codetailor section (values already there, e.g. directory-local ones,
;;   win), so M-x eglot-signal-didChangeConfiguration sends them;
;; - inserting its candidate runs the item's `codetailor.accepted' command
;;   once (Eglot 1.9 does not run completion items' commands);
;; - while the model loads, `completion-at-point' says "Codetailor: loading
;;   MODEL" instead of "No match".
;; - where point comes to rest on another line or in another buffer, it
;;   tells the server (`codetailor/cursor'), which warms the window there;
;; - next edits (codetailor-next-edit.el): after an edit, the server's guess
;;   of the next one near point is drawn (old text struck, new text after);
;;   TAB jumps there, TAB again applies it, C-g dismisses it.

;;; Code:

(require 'eglot)
(require 'jsonrpc)
(require 'codetailor (expand-file-name
                     "codetailor" (file-name-directory
                                   (or load-file-name (bound-and-true-p byte-compile-current-file)
                                       buffer-file-name))))

(require 'codetailor-next-edit (expand-file-name
                                "codetailor-next-edit" (file-name-directory
                                                        (or load-file-name (bound-and-true-p byte-compile-current-file)
                                                            buffer-file-name))))

(defvar codetailor-eglot-modes '(python-mode python-ts-mode js-mode js-ts-mode
                                 typescript-ts-mode go-mode go-ts-mode rust-mode
                                 rust-ts-mode c-mode c-ts-mode c++-mode c++-ts-mode)
  "Major modes in which Eglot starts Codetailor.")

(defclass codetailor-eglot-server (eglot-lsp-server)
  ((ready :initform nil :accessor codetailor-eglot--ready
          :documentation "Non-nil once `codetailor.status' said the model is ready."))
  "Eglot's connection to a Codetailor server.")

(defun codetailor-eglot--contact (&optional _interactive)
  "The Eglot contact for Codetailor, from `codetailor-command' as it is now."
  `(codetailor-eglot-server ,@(codetailor--command)
                            :initializationOptions ,(codetailor--initialization-options)))

(add-to-list 'eglot-server-programs (cons codetailor-eglot-modes #'codetailor-eglot--contact))

(defun codetailor-eglot--ours-p (server)
  (cl-typep server 'codetailor-eglot-server))

;;; Settings: a :codetailor section in `eglot-workspace-configuration', ours only

(defun codetailor-eglot--configuration (configuration server &rest args)
  "Around `eglot--workspace-configuration-plist' (CONFIGURATION).
For Codetailor's SERVER, add `codetailor-settings' under :codetailor."
  (let ((plist (apply configuration server args)))
    (if (not (codetailor-eglot--ours-p server))
        plist
      (plist-put (copy-sequence plist) :codetailor
                 (codetailor--merge-settings (plist-get plist :codetailor))))))

(advice-add 'eglot--workspace-configuration-plist :around #'codetailor-eglot--configuration)

(defun codetailor-eglot--settings-sent (server &rest _)
  "After didChangeConfiguration: the model may reload, so ask its state again."
  (when (codetailor-eglot--ours-p server)
    (setf (codetailor-eglot--ready server) nil)))

(advice-add 'eglot-signal-didChangeConfiguration :after #'codetailor-eglot--settings-sent)

;;; completion-at-point: the loading line, and accepts counted once

(defvar codetailor-eglot--command-ran nil
  "Within an exit function: whether Eglot itself ran the accept command.")

(defun codetailor-eglot--ready-p (server)
  "Whether SERVER's model is ready; if not, say so in the echo area."
  (or (codetailor-eglot--ready server)
      (let* ((status (ignore-errors
                       (jsonrpc-request server :workspace/executeCommand
                                        '(:command "codetailor.status") :timeout 3)))
             (line (codetailor--status-line status)))
        (if line
            (progn (message "%s" line) nil)
          (setf (codetailor-eglot--ready server) t)))))

(defun codetailor-eglot--item (proxy table)
  "The LSP item of candidate PROXY from completion TABLE.
A candidate inserted by `completion-at-point' itself (one match, or the
*Completions* buffer) comes without text properties: it is then found
again among TABLE's candidates, which Eglot keeps for this completion."
  (or (get-text-property 0 'eglot--lsp-item proxy)
      (let ((found (cl-find proxy (all-completions "" table) :test #'string=)))
        (and found (get-text-property 0 'eglot--lsp-item found)))))

(defun codetailor-eglot--accept (server proxy table)
  "Tell SERVER that its candidate PROXY from TABLE was inserted (`codetailor.accepted')."
  (let* ((item (codetailor-eglot--item proxy table))
         (command (plist-get item :command))
         (arguments (if (equal (plist-get command :command) codetailor-accepted-command)
                        (plist-get command :arguments)
                      ["completion"])))
    (jsonrpc-async-request server :workspace/executeCommand
                           `(:command ,codetailor-accepted-command :arguments ,arguments)
                           :success-fn #'ignore
                           :error-fn (lambda (error)
                                       (message "Codetailor: accept not counted: %S" error))
                           :timeout-fn #'ignore)))

(defun codetailor-eglot--with-accept (server capf)
  "CAPF, what `eglot-completion-at-point' returned, counting accepts on SERVER."
  (pcase-let* ((`(,start ,end ,table . ,props) capf)
               (exit (plist-get props :exit-function)))
    `(,start ,end ,table
             ,@(plist-put
                (copy-sequence props) :exit-function
                (lambda (proxy status)
                  (let ((codetailor-eglot--command-ran nil))
                    (when exit (funcall exit proxy status))
                    ;; Newer Eglot runs the item's command itself: then not again.
                    (when (and (memq status '(finished exact))
                               (not codetailor-eglot--command-ran))
                      (codetailor-eglot--accept server proxy table))))))))

(defun codetailor-eglot--completion-at-point (capf &rest args)
  "Around `eglot-completion-at-point', for Codetailor's server only."
  (let ((server (eglot-current-server)))
    (cond ((not (codetailor-eglot--ours-p server)) (apply capf args))
          ((not (codetailor-eglot--ready-p server)) nil) ; the echo area says why
          (t (let ((result (apply capf args)))
               (and result (codetailor-eglot--with-accept server result)))))))

(advice-add 'eglot-completion-at-point :around #'codetailor-eglot--completion-at-point)

(defun codetailor-eglot--note-command (&rest args)
  "Before Eglot runs a command (ARGS): note whether it is the accept."
  (let ((command (if (= (length args) 3) (nth 1 args) (plist-get (nth 1 args) :command))))
    (when (equal (format "%s" command) codetailor-accepted-command)
      (setq codetailor-eglot--command-ran t))))

(advice-add 'eglot-execute-command :before #'codetailor-eglot--note-command)
(when (fboundp 'eglot-execute)          ; Eglot 1.14+ runs commands through it
  (advice-add 'eglot-execute :before #'codetailor-eglot--note-command))

;;; The cursor: where point rests (codetailor.el)

(defun codetailor-eglot--report-cursor ()
  "Tell Codetailor's server, if it serves this buffer, where point is."
  (let ((server (and (bound-and-true-p eglot--managed-mode) (eglot-current-server))))
    (when (codetailor-eglot--ours-p server)
      (eglot--signal-textDocument/didChange) ; Eglot holds edits back a moment: send them first
      (jsonrpc-notify server (intern (concat ":" codetailor-cursor-notification))
                      (eglot--TextDocumentPositionParams))
      t)))

(codetailor--follow-cursor #'codetailor-eglot--report-cursor)

;;; Next edits (codetailor-next-edit.el) over Eglot's connection

(defun codetailor-eglot--next-edit-backend (server)
  "The next-edit backend for SERVER in the current buffer."
  (list
   :params (lambda ()
             (eglot--signal-textDocument/didChange) ; Eglot holds edits back a moment
             (list :textDocument (eglot--VersionedTextDocumentIdentifier)
                   :position (eglot--pos-to-lsp-position)))
   :version (lambda () eglot--versioned-identifier)
   :request (lambda (params callback)
              (jsonrpc-async-request server (intern (concat ":" codetailor-next-edit-method)) params
                                     :success-fn callback :error-fn #'ignore :timeout-fn #'ignore))
   :notify (lambda (method params) (jsonrpc-notify server (intern (concat ":" method)) params))
   :execute (lambda (command)
              (jsonrpc-async-request server :workspace/executeCommand
                                     (list :command (plist-get command :command)
                                           :arguments (or (plist-get command :arguments) []))
                                     :success-fn #'ignore :error-fn #'ignore :timeout-fn #'ignore))
   :region (lambda (range) (eglot--range-region range))))

(defun codetailor-eglot--next-edit-managed ()
  "In `eglot-managed-mode-hook': next edits where Codetailor's server serves."
  (let ((server (and (bound-and-true-p eglot--managed-mode) (eglot-current-server))))
    (if (codetailor-eglot--ours-p server)
        (codetailor-next-edit-enable (codetailor-eglot--next-edit-backend server))
      (codetailor-next-edit-disable))))

(add-hook 'eglot-managed-mode-hook #'codetailor-eglot--next-edit-managed)

(provide 'codetailor-eglot)
;;; codetailor-eglot.el ends here
