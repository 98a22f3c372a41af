;;; codetailor-e2e.el --- Drives a real Emacs through one Codetailor completion -*- lexical-binding: t; -*-

;; Run by tests/e2e/test_emacs.py, after the user's set-up (the README's
;; `load' and `setq codetailor-command').  In batch Emacs:
;;
;;   (codetailor-e2e-run 'eglot "/tmp/x/add.py" 2)   ; or 'lsp-mode
;;
;; opens the file, starts the client, puts point at the end of line 2 (mid-word:
;; the file's text stops inside a word) and calls `completion-at-point' until
;; the buffer changes; then reads `codetailor.status' through the client's own
;; connection until the accept is counted.  It prints one JSON object on
;; stdout (the test asserts on it) and exits 0, or prints the error and
;; exits 1.  Every wait is bounded.

;;; Code:

(require 'cl-lib)
(require 'json)
(require 'subr-x)
(require 'codetailor)                   ; loaded by the client's file, first

(defvar codetailor-e2e--candidate nil "newText of the first item the server sent.")
(defvar codetailor-e2e--messages nil "Echo-area messages, newest first.")

(defun codetailor-e2e--record-message (result)
  (when (stringp result) (push result codetailor-e2e--messages))
  result)

(defun codetailor-e2e--record-completion (response)
  "Keep the first item's newText of a textDocument/completion RESPONSE."
  (let* ((items (if (vectorp response) response (codetailor--get response :items)))
         (item (and (> (length items) 0) (aref items 0)))
         (edit (and item (codetailor--get item :textEdit))))
    (when edit (setq codetailor-e2e--candidate (codetailor--get edit :newText))))
  response)

(defun codetailor-e2e--wait (what seconds predicate)
  "Run PREDICATE until non-nil, processing server output.
At most SECONDS, then fail saying it was waiting for WHAT."
  (let ((deadline (+ (float-time) seconds)) value)
    (while (and (not (setq value (funcall predicate)))
                (< (float-time) deadline))
      (accept-process-output nil 0.05))
    (or value (error "Timed out after %ss waiting for %s" seconds what))))

(defun codetailor-e2e--status (client)
  "`codetailor.status', asked through CLIENT's connection for this buffer."
  (pcase client
    ('eglot (jsonrpc-request (eglot-current-server) :workspace/executeCommand
                             '(:command "codetailor.status")))
    ('lsp-mode (with-lsp-workspace (codetailor-lsp--workspace)
                 (lsp-request "workspace/executeCommand" '(:command "codetailor.status"))))))

(defun codetailor-e2e--start (client)
  "Start CLIENT in the current buffer, as a user would; return once connected."
  (pcase client
    ('eglot
     (advice-add 'jsonrpc-request :filter-return
                 (lambda (response)
                   (if (and (consp response) (plist-member response :items))
                       (codetailor-e2e--record-completion response)
                     response)))
     (call-interactively #'eglot)       ; M-x eglot
     (codetailor-e2e--wait "Eglot to connect" 30
                           (lambda () (and (eglot-current-server)
                                           (eglot--server-capable :completionProvider)))))
    ('lsp-mode
     (advice-add 'lsp-request-while-no-input :around
                 (lambda (request method &rest args)
                   (let ((response (apply request method args)))
                     (if (equal method "textDocument/completion")
                         (codetailor-e2e--record-completion response)
                       response))))
     ;; The project root lsp-mode would ask for: the file's folder.
     (lsp-workspace-folders-add (file-name-directory buffer-file-name))
     (lsp)                              ; M-x lsp
     (codetailor-e2e--wait "lsp-mode to connect" 30
                           (lambda () (when-let ((ws (codetailor-lsp--workspace)))
                                        (eq (lsp--workspace-status ws) 'initialized)))))))

(defun codetailor-e2e-run (client file line)
  "Complete at the end of LINE of FILE with CLIENT (`eglot' or `lsp-mode').
Print what happened as one JSON object."
  (let ((t0 (float-time)) (loading-calls 0) timings)
    (cl-flet ((mark (name) (push (cons name (round (* 1000 (- (float-time) t0)))) timings)))
      (condition-case err
          (progn
            (advice-add 'message :filter-return #'codetailor-e2e--record-message)
            (find-file file)
            (goto-char (point-min))
            (forward-line (1- line))
            (end-of-line)
            (codetailor-e2e--start client)
            (mark "connected_ms")
            (let ((before (buffer-string)) (calls 0))
              ;; Before the model is ready completion-at-point only says so; then it
              ;; inserts the candidate.
              (codetailor-e2e--wait
               "completion-at-point to insert a candidate" 120
               (lambda ()
                 (setq codetailor-e2e--messages nil)
                 (cl-incf calls)
                 (completion-at-point)
                 (when (cl-some (lambda (m) (string-prefix-p "Codetailor: loading" m))
                                codetailor-e2e--messages)
                   (cl-incf loading-calls))
                 (or (not (equal (buffer-string) before))
                     (progn (accept-process-output nil 0.2) nil))))
              (mark "inserted_ms")
              (let* ((status (codetailor-e2e--wait
                              "the accept to be counted" 20
                              (lambda ()
                                (let ((s (codetailor-e2e--status client)))
                                  (and (> (or (codetailor--get (codetailor--get s :counts)
                                                               :accepted)
                                              0)
                                          0)
                                       s)))))
                     ;; One more round trip: an accept sent twice would be counted by now.
                     (status (codetailor-e2e--status client))
                     (counts (codetailor--get status :counts)))
                (mark "accepted_ms")
                (princ (json-encode
                        `((line . ,(buffer-substring-no-properties
                                    (line-beginning-position) (line-end-position)))
                          (text . ,(buffer-substring-no-properties (point-min) (point-max)))
                          (point . ,(1- (point)))
                          (candidate . ,codetailor-e2e--candidate)
                          (calls . ,calls)
                          (loading_calls . ,loading-calls)
                          (accepted . ,(codetailor--get counts :accepted))
                          (accepted_completion . ,(codetailor--get counts :accepted_completion))
                          (state . ,(codetailor--get status :state))
                          (max_tokens . ,(codetailor--get (codetailor--get status :settings)
                                                          :maxTokens))
                          (configuration . ,(and (eq client 'eglot)
                                                 (eglot--workspace-configuration-plist
                                                  (eglot-current-server))))
                          (timings . ,(nreverse timings)))))
                (terpri)
                (kill-emacs 0))))
        (error
         (princ (format "codetailor-e2e: %s failed: %s\nbuffer: %S\nmessages: %S\n"
                        client (error-message-string err) (buffer-string)
                        (seq-take codetailor-e2e--messages 5)))
         (kill-emacs 1))))))

(defun codetailor-e2e--ahead (client)
  "The `ahead' counts of `codetailor.status', as an alist of (NAME . COUNT)."
  (let ((ahead (codetailor--get (codetailor-e2e--status client) :ahead)))
    (mapcar (lambda (name) (cons name (or (codetailor--get ahead (intern (format ":%s" name))) 0)))
            '("cursors" "warms" "warmsDone" "warmsYielded" "warmsSkipped"))))

(defun codetailor-e2e-cursor (client file keys)
  "Open FILE with CLIENT, wait for the model, then type KEYS (moves of point).
Wait until the server has counted a cursor report and every warm it started
has ended; print the `ahead' counts before and after as JSON."
  (condition-case err
      (progn
        (find-file file)
        (goto-char (point-min))
        (codetailor-e2e--start client)
        (codetailor-e2e--wait "the model to load" 120
                              (lambda () (equal (codetailor--get (codetailor-e2e--status client)
                                                                 :state)
                                                "ready")))
        (let ((before (codetailor-e2e--ahead client)))
          ;; Through the command loop, as typed: `post-command-hook' runs after each key.
          (execute-kbd-macro (kbd keys))
          (let ((after (codetailor-e2e--wait
                        "a cursor report and its warm to end" 60
                        (lambda ()
                          (let* ((a (codetailor-e2e--ahead client))
                                 (n (lambda (k) (cdr (assoc k a)))))
                            (and (> (funcall n "cursors") (cdr (assoc "cursors" before)))
                                 (> (funcall n "warms") (cdr (assoc "warms" before)))
                                 (= (funcall n "warms")
                                    (+ (funcall n "warmsDone") (funcall n "warmsYielded")
                                       (funcall n "warmsSkipped")))
                                 a))))))
            (princ (json-encode `((before . ,before) (after . ,after)
                                  (line . ,(line-number-at-pos)))))
            (terpri)
            (kill-emacs 0))))
    (error
     (princ (format "codetailor-e2e: %s cursor failed: %s\n" client (error-message-string err)))
     (kill-emacs 1))))

(defun codetailor-e2e-missing-command (client file)
  "Start CLIENT on FILE with a `codetailor-command' that does not exist.
Print what the user sees (the error and the messages) as JSON."
  (advice-add 'message :filter-return #'codetailor-e2e--record-message)
  (find-file file)
  (let ((error (condition-case err
                   (progn (pcase client
                            ('eglot (call-interactively #'eglot))
                            ('lsp-mode (lsp-workspace-folders-add (file-name-directory file))
                                       (lsp)))
                          nil)
                 (error (error-message-string err)))))
    (princ (json-encode `((error . ,error)
                          (messages . ,(vconcat (reverse codetailor-e2e--messages))))))
    (terpri)
    (kill-emacs 0)))

(defun codetailor-e2e--next-edit-drawn ()
  "What the shown next edit's overlays draw: (STRUCK AFTER-STRING), or nil."
  (when codetailor-next-edit--edit
    (let (struck after)
      (dolist (ov codetailor-next-edit--overlays)
        (when (eq (overlay-get ov 'face) 'codetailor-next-edit-deleted)
          (setq struck (buffer-substring-no-properties (overlay-start ov) (overlay-end ov))))
        (when (overlay-get ov 'after-string)
          (setq after (substring-no-properties (overlay-get ov 'after-string)))))
      (list struck after))))

(defun codetailor-e2e--wait-drawn (what)
  "Wait until a next edit is drawn; return what it draws."
  (codetailor-e2e--wait what 30 #'codetailor-e2e--next-edit-drawn))

(defun codetailor-e2e-next-edit (client file)
  "With CLIENT on FILE: rename `factor' on line 1, then dismiss, jump and apply the next edit.
Print what was drawn, where point was and the text after each step as JSON."
  (condition-case err
      (let ((out nil))
        (cl-flet ((note (key value) (push (cons key value) out))
                  (keys (k) (execute-kbd-macro (kbd k)))
                  (where () (list (line-number-at-pos) (current-column))))
          (find-file file)
          (codetailor-e2e--start client)
          (codetailor-e2e--wait "the model to load" 120
                                (lambda () (equal (codetailor--get (codetailor-e2e--status client)
                                                                   :state)
                                                  "ready")))
          (note 'tab_before (format "%s" (key-binding (kbd "TAB"))))
          (goto-char (point-min))
          (keys "C-e C-b C-b DEL DEL DEL DEL DEL DEL k") ; `factor' -> `k', as typed
          (let ((at (where)))
            (note 'drawn (codetailor-e2e--wait-drawn "a next edit"))
            (note 'point_kept (equal at (where)))
            (note 'tab_shown (format "%s" (key-binding (kbd "TAB")))))
          (keys "C-g")
          (note 'after_dismiss (codetailor-e2e--next-edit-drawn))
          (keys "DEL k")                ; another edit: asked again
          (codetailor-e2e--wait-drawn "the next edit again")
          (keys "TAB")
          (note 'jumped_to (where))
          (note 'text_after_jump (buffer-string))
          (keys "TAB")
          (note 'text_after_apply (buffer-substring-no-properties (point-min) (point-max)))
          (note 'after_apply (codetailor-e2e--next-edit-drawn))
          (note 'tab_after (format "%s" (key-binding (kbd "TAB"))))
          (note 'counts
                (codetailor-e2e--wait
                 "the accept to reach the server" 20
                 (lambda ()
                   ;; The real server counts next edits apart; the fake one counts every accept.
                   (let* ((s (codetailor-e2e--status client))
                          (counts (or (codetailor--get (codetailor--get s :nextEdit) :counts)
                                      (codetailor--get s :counts))))
                     (and (> (or (codetailor--get counts :accepted) 0) 0) counts)))))
          (princ (json-encode (nreverse out)))
          (terpri)
          (kill-emacs 0)))
    (error
     (princ (format "codetailor-e2e: %s next edit failed: %s\nbuffer: %S\n"
                    client (error-message-string err) (buffer-string)))
     (kill-emacs 1))))

(provide 'codetailor-e2e)
;;; codetailor-e2e.el ends here
