;;; codetailor.el --- What the Codetailor Emacs clients share -*- lexical-binding: t; -*-

;; The user's options and the small facts both clients need: the server
;; command (checked, with a message that says how to fix it), the settings,
;; the accept command's name and the echo-area line for a model that is not
;; ready.  codetailor-eglot.el and codetailor-lsp-mode.el load this file from
;; their own folder; load one of those, not this.

;;; Code:

(require 'cl-lib)
(require 'subr-x)

(defgroup codetailor nil "Local code completion with Codetailor." :group 'tools)

(defcustom codetailor-command '("codetailor" "serve")
  "The command that runs the Codetailor server on stdio: program, then arguments.
Read each time a server starts, so it may be set after loading the client,
e.g. \\='(\"/path/to/codetailor/.venv/bin/codetailor\" \"serve\")."
  :type '(choice (repeat :tag "Program and arguments" string)
                 (string :tag "Command line")))

(defcustom codetailor-settings
  '(:maxTokens 64 :multiline "auto" :timeBudgetMs 2000 :enable t)
  "Server settings, sent as initializationOptions.
CamelCase, as the server names them; also :model, :adapter, :device,
:dtype, :promptFormat, :context."
  :type 'plist)

;; A repository can ship a `.dir-locals.el'.  Eglot marks
;; `eglot-workspace-configuration' safe for any list, so one can set our section
;; there without a prompt; and one that sets these options must ask each time.
(put 'codetailor-command 'risky-local-variable t)
(put 'codetailor-settings 'risky-local-variable t)

(defconst codetailor--machine-keys '(:model :adapter :engine)
  "Settings a project may not choose: they pick where code and the API key go, or load weights.
They come from the global value of `codetailor-settings' alone, never from a
directory-local value nor from `eglot-workspace-configuration'.")

(defun codetailor--without-machine-keys (plist)
  "PLIST without `codetailor--machine-keys'."
  (cl-loop for (key value) on plist by #'cddr
           unless (memq key codetailor--machine-keys) append (list key value)))

(defun codetailor--settings ()
  "`codetailor-settings' as sent to the server.
The machine keys come from its global value, so a directory-local value
cannot change them."
  (let ((own (default-value 'codetailor-settings)))
    (append (codetailor--without-machine-keys codetailor-settings)
            (cl-loop for (key value) on own by #'cddr
                     when (memq key codetailor--machine-keys) append (list key value)))))

(defun codetailor--initialization-options ()
  "`codetailor--settings' and `:drawsNextEdits', as initializationOptions.
codetailor-next-edit.el asks for next edits and draws them, so an empty
completion need not wait for the server to try one drawn as inline text."
  (append (codetailor--settings) (list :drawsNextEdits t)))

(defconst codetailor-accepted-command "codetailor.accepted"
  "The command each Codetailor completion item carries.
Running it (workspace/executeCommand) counts an accept.")

(defun codetailor--program-path (program)
  "The executable file PROGRAM names, or nil.
A path is taken as is, a bare name is looked up on `exec-path'."
  (when (and (stringp program) (not (string-empty-p program)))
    (if (file-name-directory program)
        (let ((file (expand-file-name program)))
          (and (file-regular-p file) (file-executable-p file) file))
      (executable-find program))))

(defun codetailor--command-list ()
  "`codetailor-command' as a list.
A string is split at spaces, \"double quotes\" grouping."
  (if (stringp codetailor-command)
      (split-string-and-unquote codetailor-command)
    codetailor-command))

(defun codetailor--command-problem ()
  "Why `codetailor-command' cannot start a server, as one line; nil when it can."
  (let ((program (car-safe (codetailor--command-list))))
    (unless (codetailor--program-path program)
      (format (concat "Codetailor: server command %S not found; set `codetailor-command', "
                      "e.g. (setq codetailor-command '(\"/path/to/codetailor/.venv/bin/codetailor\" \"serve\"))")
              (or program codetailor-command)))))

(defun codetailor--command ()
  "`codetailor-command' with its program resolved.
Signals a `user-error' that says how to fix it when the program does not exist."
  (when-let ((problem (codetailor--command-problem)))
    (user-error "%s" problem))
  (let ((command (codetailor--command-list)))
    (cons (codetailor--program-path (car command)) (cdr command))))

(defun codetailor--get (object key)
  "KEY (a keyword) of the JSON OBJECT.
OBJECT is a plist, or a hash table (lsp-mode's default)."
  (cond ((hash-table-p object) (gethash (substring (symbol-name key) 1) object))
        ((listp object) (plist-get object key))))

(defun codetailor--status-line (status)
  "The echo-area line for STATUS, or nil when the model is ready.
STATUS is what `codetailor.status' answers.  An unknown STATUS (no
answer) counts as ready: completion is not held back."
  (pcase (codetailor--get status :state)
    ((or "loading" "idle")
     (format "Codetailor: loading %s" (or (codetailor--get status :model) "the model")))
    ("failed"
     (format "Codetailor: the model failed to load: %s"
             (or (codetailor--get status :error) "see the server's log")))))

(defun codetailor--merge-settings (section)
  "`codetailor-settings' with SECTION's values (a plist or alist) on top.
SECTION comes from the workspace configuration, which a project can set:
its machine keys (`codetailor--machine-keys') are ignored."
  (let ((merged (codetailor--settings)))
    (if (and (consp section) (consp (car section)))
        (pcase-dolist (`(,key . ,value) section)
          (setq merged (plist-put merged (if (keywordp key) key (intern (format ":%s" key)))
                                  value)))
      (cl-loop for (key value) on section by #'cddr
               do (setq merged (plist-put merged key value))))
    (codetailor--keep-machine-keys merged)))

(defun codetailor--keep-machine-keys (merged)
  "MERGED with its machine keys as `codetailor--settings' has them."
  (let ((own (codetailor--settings)))
    (unless (cl-every (lambda (key) (equal (plist-get merged key) (plist-get own key)))
                      codetailor--machine-keys)
      (message "Codetailor: the workspace configuration may not set %s; ignored"
               (mapconcat #'symbol-name codetailor--machine-keys ", ")))
    (append (codetailor--without-machine-keys merged)
            (cl-loop for (key value) on own by #'cddr
                     when (memq key codetailor--machine-keys) append (list key value)))))

;;; The cursor: where point rests, told to the server (`codetailor/cursor')

;; The server prefills the prompt window where the cursor is before the first
;; request there (as llama.vim warms its cache on entering a buffer).  LSP
;; tells a server of edits, not of cursor moves, so the clients send this
;; notification once point has rested `codetailor--cursor-delay' seconds on
;; another line or in another buffer.  The server decides whether the window
;; is new; the clients only report.

(defconst codetailor-cursor-notification "codetailor/cursor"
  "The notification that tells the server where point rests.")

(defvar codetailor--cursor-delay 0.15
  "Seconds point must rest before it is reported (the Neovim plugin waits as long).")

(defvar codetailor--cursor-functions nil
  "Functions that report point to their client's server, in the current buffer.
Each takes no argument and returns non-nil when its client serves the
buffer and it sent the notification.")

(defvar codetailor--cursor-seen nil
  "(BUFFER . START OF LINE) where point was after the last command.")

(defvar codetailor--cursor-timer nil
  "The pending report, if any.")

(defun codetailor--cursor-moved ()
  "Report point once it rests, if it left its line or buffer.
In `post-command-hook'."
  (let ((here (cons (current-buffer) (line-beginning-position))))
    (unless (equal here codetailor--cursor-seen)
      (setq codetailor--cursor-seen here)
      (when (timerp codetailor--cursor-timer)
        (cancel-timer codetailor--cursor-timer))
      (setq codetailor--cursor-timer
            (run-with-timer codetailor--cursor-delay nil
                            #'codetailor--cursor-report (current-buffer))))))

(defun codetailor--cursor-report (buffer)
  "Report point in BUFFER, if it is still the current buffer, to its server."
  (setq codetailor--cursor-timer nil)
  (when (eq buffer (window-buffer (selected-window)))
    (with-current-buffer buffer
      (with-demoted-errors "Codetailor: cursor not reported: %S"
        (run-hook-with-args-until-success 'codetailor--cursor-functions)))))

(defun codetailor--follow-cursor (report)
  "Call REPORT (see `codetailor--cursor-functions') where point comes to rest."
  (add-hook 'codetailor--cursor-functions report)
  (add-hook 'post-command-hook #'codetailor--cursor-moved))

(provide 'codetailor)
;;; codetailor.el ends here
