;;; codetailor-next-edit.el --- Next-edit suggestions for the Codetailor clients -*- lexical-binding: t; -*-

;; After an edit (and a pause of `:nextEditDebounceMs' in `codetailor-settings'),
;; ask the server for the edit the user will make next near point
;; (`textDocument/copilotInlineEdit', as the Copilot language server names it)
;; and show it with overlays: the text it removes struck through, the text it
;; inserts right after, an arrow in the fringe.  While one is shown, TAB jumps
;; to it and TAB again applies it; C-g dismisses it.  Point never moves and no
;; key is taken unless an edit is shown: the keys live in a minor mode that is
;; on only then.  A few moves of point elsewhere, or any edit, hide it.
;;
;; The clients (codetailor-eglot.el, codetailor-lsp-mode.el) give each buffer a
;; backend, a plist of functions that speak to their connection:
;;   :params   ()                 the request's params (edits sent first)
;;   :version  ()                 the document's version as the server knows it
;;   :request  (PARAMS CALLBACK)  send the request; CALLBACK gets the result
;;   :notify   (METHOD PARAMS)    send a notification
;;   :execute  (COMMAND)          run a Command object on the server
;;   :region   (RANGE)            an LSP range as (BEG . END) in the buffer

;;; Code:

(require 'cl-lib)
(require 'subr-x)

(declare-function codetailor--get "codetailor")
(defvar codetailor-settings)

(defconst codetailor-next-edit-method "textDocument/copilotInlineEdit"
  "The request for the next edit.")
(defconst codetailor-next-edit-shown-notification "textDocument/didShowInlineEdit"
  "The notification that an edit was shown.")

(defcustom codetailor-next-edit-clear-after-moves 3
  "Hide a shown next edit after this many moves of point that are not TAB's."
  :type 'integer :group 'codetailor)

(defface codetailor-next-edit-deleted '((t :strike-through t :inherit shadow))
  "Text a next edit removes." :group 'codetailor)
(defface codetailor-next-edit-inserted '((t :inherit diff-added))
  "Text a next edit inserts." :group 'codetailor)

(defvar-local codetailor-next-edit--backend nil "This buffer's backend (see the Commentary).")
(defvar-local codetailor-next-edit--edit nil "The shown edit, as the server sent it.")
(defvar-local codetailor-next-edit--overlays nil "The overlays that draw it.")
(defvar-local codetailor-next-edit--region nil "(BEG . END) markers of its range.")
(defvar-local codetailor-next-edit--timer nil "The pending request, if any.")
(defvar-local codetailor-next-edit--generation 0 "Bumped by each clear: late answers check it.")
(defvar-local codetailor-next-edit--moves 0 "Moves of point since it was shown.")
(defvar-local codetailor-next-edit--point nil "Point after the last command.")

(defvar codetailor-next-edit-keys-mode-map
  (let ((map (make-sparse-keymap)))
    (define-key map (kbd "TAB") #'codetailor-next-edit-tab)
    (define-key map (kbd "<tab>") #'codetailor-next-edit-tab)
    (define-key map (kbd "C-g") #'codetailor-next-edit-dismiss)
    map)
  "The keys of a shown next edit.")

(define-minor-mode codetailor-next-edit-keys-mode
  "On while a next edit is shown.
TAB jumps to it, then applies it; C-g dismisses it."
  :lighter nil :keymap codetailor-next-edit-keys-mode-map)

(defun codetailor-next-edit--setting (key default)
  "KEY of `codetailor-settings', or DEFAULT when unset."
  (if (plist-member codetailor-settings key) (plist-get codetailor-settings key) default))

(defun codetailor-next-edit--enabled-p ()
  "Whether next edits are on (`:nextEdit' and `:enable' in `codetailor-settings')."
  (and codetailor-next-edit--backend
       (not (memq (codetailor-next-edit--setting :nextEdit t) '(nil :json-false)))
       (not (memq (codetailor-next-edit--setting :enable t) '(nil :json-false)))))

(defun codetailor-next-edit-clear ()
  "Hide the shown next edit and forget pending requests."
  (cl-incf codetailor-next-edit--generation)
  (when (timerp codetailor-next-edit--timer)
    (cancel-timer codetailor-next-edit--timer))
  (setq codetailor-next-edit--timer nil)
  (mapc #'delete-overlay codetailor-next-edit--overlays)
  (setq codetailor-next-edit--overlays nil
        codetailor-next-edit--edit nil
        codetailor-next-edit--region nil)
  (when codetailor-next-edit-keys-mode
    (codetailor-next-edit-keys-mode -1)))

(defun codetailor-next-edit--pick (result version)
  "The first edit in RESULT meant for VERSION; nil for none or a stale answer."
  (cl-find-if (lambda (edit)
                (and (stringp (codetailor--get edit :text))
                     (codetailor--get edit :range)
                     (equal (codetailor--get (codetailor--get edit :textDocument) :version)
                            version)))
              (append (codetailor--get result :edits) nil)))

(defun codetailor-next-edit--draw (beg end text)
  "Overlays for replacing BEG..END by TEXT: the old text struck, TEXT after it."
  (let ((mark (make-overlay beg beg nil t))
        (new (make-overlay end end nil t)))
    (overlay-put mark 'before-string
                 (propertize "»" 'display '(left-fringe right-triangle codetailor-next-edit-inserted)))
    (overlay-put new 'after-string (propertize text 'face 'codetailor-next-edit-inserted))
    (cons mark (cons new (when (< beg end)
                           (let ((old (make-overlay beg end nil nil t)))
                             (overlay-put old 'face 'codetailor-next-edit-deleted)
                             (list old)))))))

(defun codetailor-next-edit--show (edit)
  "Show EDIT, if its range lies in the buffer, and tell the server."
  (pcase (ignore-errors (funcall (plist-get codetailor-next-edit--backend :region)
                                 (codetailor--get edit :range)))
    (`(,beg . ,end)
     (when (and (integer-or-marker-p beg) (integer-or-marker-p end) (<= beg end))
       (setq codetailor-next-edit--edit edit
             codetailor-next-edit--region (cons (copy-marker beg) (copy-marker end t))
             codetailor-next-edit--overlays
             (codetailor-next-edit--draw beg end (codetailor--get edit :text))
             codetailor-next-edit--moves 0
             codetailor-next-edit--point (point))
       (codetailor-next-edit-keys-mode 1)
       (funcall (plist-get codetailor-next-edit--backend :notify)
                codetailor-next-edit-shown-notification (list :item edit))))))

(defun codetailor-next-edit-request ()
  "Ask the server now for the next edit at point."
  (when (codetailor-next-edit--enabled-p)
    (let* ((backend codetailor-next-edit--backend)
           (buffer (current-buffer))
           (generation codetailor-next-edit--generation)
           (params (funcall (plist-get backend :params)))
           (version (funcall (plist-get backend :version)))
           (tick (buffer-chars-modified-tick)))
      (funcall (plist-get backend :request) params
               (lambda (result)
                 (when (buffer-live-p buffer)
                   (with-current-buffer buffer
                     ;; An edit or a clear since: a newer request is on its way, or none is wanted.
                     (when (and (= generation codetailor-next-edit--generation)
                                (= tick (buffer-chars-modified-tick))
                                (null codetailor-next-edit--edit))
                       (when-let ((edit (codetailor-next-edit--pick result version)))
                         (codetailor-next-edit--show edit))))))))))

(defun codetailor-next-edit--after-change (&rest _)
  "After an edit: hide what is shown, ask again once edits pause."
  (codetailor-next-edit-clear)
  (when (codetailor-next-edit--enabled-p)
    (let ((buffer (current-buffer)))
      (setq codetailor-next-edit--timer
            (run-with-timer
             (/ (codetailor-next-edit--setting :nextEditDebounceMs 300) 1000.0) nil
             (lambda ()
               (when (and (buffer-live-p buffer) (eq buffer (window-buffer (selected-window))))
                 (with-current-buffer buffer
                   (setq codetailor-next-edit--timer nil)
                   (with-demoted-errors "Codetailor: next edit: %S"
                     (codetailor-next-edit-request))))))))))

(defun codetailor-next-edit--dismissed (reason)
  "Tell the server the shown edit was hidden untaken, for REASON; then hide it.
REASON is \"dismiss\" (C-g) or \"cursor-moved\" (`codetailor/dismissed', for
the local feedback log)."
  (let* ((arguments (codetailor--get (codetailor--get codetailor-next-edit--edit :command)
                                     :arguments))
         (id (and (> (length arguments) 0) (elt arguments 0))))
    (when (and (stringp id) codetailor-next-edit--backend)
      (funcall (plist-get codetailor-next-edit--backend :notify)
               "codetailor/dismissed" (list :id id :reason reason))))
  (codetailor-next-edit-clear))

(defun codetailor-next-edit--post-command ()
  "Count moves of point that are not TAB's; a few of them hide the edit."
  (when (and codetailor-next-edit--edit
             (not (memq this-command '(codetailor-next-edit-tab codetailor-next-edit-dismiss)))
             (not (eql (point) codetailor-next-edit--point)))
    (when (>= (cl-incf codetailor-next-edit--moves) codetailor-next-edit-clear-after-moves)
      (codetailor-next-edit--dismissed "cursor-moved")))
  (setq codetailor-next-edit--point (point)))

(defun codetailor-next-edit--at-edit-p ()
  "Whether point is on the shown edit's lines (TAB applies) or away (TAB jumps)."
  (pcase-let ((`(,beg . ,end) codetailor-next-edit--region))
    (<= (save-excursion (goto-char beg) (line-beginning-position))
        (point)
        (save-excursion (goto-char end) (line-end-position)))))

(defun codetailor-next-edit-tab ()
  "Jump to the shown next edit; on it, apply it and tell the server."
  (interactive)
  (if (not codetailor-next-edit--edit)
      (codetailor-next-edit-keys-mode -1)
    (pcase-let ((`(,beg . ,end) codetailor-next-edit--region)
                (edit codetailor-next-edit--edit))
      (if (not (codetailor-next-edit--at-edit-p))
          (goto-char beg)
        (let ((text (codetailor--get edit :text))
              (command (codetailor--get edit :command))
              (backend codetailor-next-edit--backend)
              (start (marker-position beg)) (stop (marker-position end)))
          (codetailor-next-edit-clear)
          (goto-char start)
          (delete-region start stop)
          (insert text)
          (when command (funcall (plist-get backend :execute) command)))))
    (setq codetailor-next-edit--point (point))))

(defun codetailor-next-edit-dismiss ()
  "Hide the shown next edit."
  (interactive)
  (when codetailor-next-edit--edit
    (codetailor-next-edit--dismissed "dismiss"))
  (deactivate-mark))

(defun codetailor-next-edit-enable (backend)
  "Follow edits in this buffer and show next edits through BACKEND."
  (setq codetailor-next-edit--backend backend)
  (add-hook 'after-change-functions #'codetailor-next-edit--after-change nil t)
  (add-hook 'post-command-hook #'codetailor-next-edit--post-command nil t))

(defun codetailor-next-edit-disable ()
  "Stop showing next edits in this buffer."
  (codetailor-next-edit-clear)
  (setq codetailor-next-edit--backend nil)
  (remove-hook 'after-change-functions #'codetailor-next-edit--after-change t)
  (remove-hook 'post-command-hook #'codetailor-next-edit--post-command t))

(provide 'codetailor-next-edit)
;;; codetailor-next-edit.el ends here
