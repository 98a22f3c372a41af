;;; codetailor-test.el --- ERT tests of the Emacs clients' own logic -*- lexical-binding: t; -*-

;; No server: the settings merge, the echo-area line, the command check, and
;; the Eglot configuration advice for our server and another one.  Run by
;; tests/e2e/test_emacs.py after loading codetailor-eglot.el:
;;   emacs --batch -Q -l codetailor-eglot.el -l codetailor-test.el -f ert-run-tests-batch-and-exit

;;; Code:

(require 'ert)
(require 'codetailor)
(require 'codetailor-eglot)

(ert-deftest codetailor-merge-settings-lets-the-section-win ()
  (let ((codetailor-settings '(:maxTokens 64 :multiline "auto")))
    (should (equal (codetailor--merge-settings '(:maxTokens 8 :context :json-false))
                   '(:maxTokens 8 :multiline "auto" :context :json-false)))
    ;; Eglot 1.9 also takes alists.
    (should (equal (codetailor--merge-settings '((maxTokens . 8)))
                   '(:maxTokens 8 :multiline "auto")))
    (should (equal (codetailor--merge-settings nil) '(:maxTokens 64 :multiline "auto")))
    (should (equal codetailor-settings '(:maxTokens 64 :multiline "auto")))))

(ert-deftest codetailor-status-line-says-why-there-is-no-completion ()
  (should (equal (codetailor--status-line '(:state "loading" :model "smollm2-135m"))
                 "Codetailor: loading smollm2-135m"))
  (let ((status (make-hash-table :test #'equal)))  ; lsp-mode's JSON objects
    (puthash "state" "failed" status)
    (puthash "error" "no such model" status)
    (should (equal (codetailor--status-line status)
                   "Codetailor: the model failed to load: no such model")))
  (should-not (codetailor--status-line '(:state "ready")))
  (should-not (codetailor--status-line nil)))

(ert-deftest codetailor-command-is-checked-when-a-server-starts ()
  (let ((codetailor-command '("/no/such/dir/codetailor" "serve")))
    (should (string-match-p "server command \"/no/such/dir/codetailor\" not found"
                            (codetailor--command-problem)))
    (should-error (codetailor--command) :type 'user-error))
  (let ((codetailor-command (list (expand-file-name "emacs" invocation-directory) "serve")))
    (should-not (codetailor--command-problem))
    (should (equal (cdr (codetailor--command)) '("serve"))))
  (let ((codetailor-command (format "%s serve --model \"a b\""
                                    (expand-file-name "emacs" invocation-directory))))
    (should (equal (cdr (codetailor--command)) '("serve" "--model" "a b")))))

(ert-deftest codetailor-eglot-configuration-is-ours-only ()
  (let ((codetailor-settings '(:maxTokens 64 :enable t))
        (user '(:pylsp (:plugins (:jedi (:enabled t))) :codetailor (:maxTokens 8))))
    (cl-letf (((symbol-function 'codetailor-eglot--ours-p) (lambda (server) (eq server 'ours))))
      (should (equal (codetailor-eglot--configuration (lambda (_) user) 'other) user))
      (should (equal (codetailor-eglot--configuration (lambda (_) user) 'ours)
                     '(:pylsp (:plugins (:jedi (:enabled t)))
                              :codetailor (:maxTokens 8 :enable t))))
      (should (equal (codetailor-eglot--configuration (lambda (_) nil) 'ours)
                     '(:codetailor (:maxTokens 64 :enable t))))
      ;; The user's value itself is left as it was.
      (should (equal user '(:pylsp (:plugins (:jedi (:enabled t))) :codetailor (:maxTokens 8)))))))

(ert-deftest codetailor-eglot-counts-each-insertion-once ()
  (let (sent)
    (cl-letf (((symbol-function 'codetailor-eglot--accept)
               (lambda (server proxy _table) (push (list server proxy) sent))))
      (pcase-dolist (`(,eglot-runs-it ,status ,expected)
                     '((nil finished 1) (nil exact 1) (nil sole 0) (t finished 0)))
        (setq sent nil)
        (let* ((exit (lambda (_proxy _status)
                       ;; Newer Eglot runs the item's command from its exit function.
                       (when eglot-runs-it
                         (codetailor-eglot--note-command 'server 'codetailor.accepted []))))
               (capf (codetailor-eglot--with-accept
                      'server (list 1 3 #'ignore :exit-function exit :annotation-function #'ignore))))
          (should (equal (seq-take capf 3) (list 1 3 #'ignore)))
          (should (eq (plist-get (nthcdr 3 capf) :annotation-function) #'ignore))
          (funcall (plist-get (nthcdr 3 capf) :exit-function) "return x" status)
          (should (equal (length sent) expected))
          (when sent (should (equal (car sent) '(server "return x")))))))))

;; Eglot 1.9: a candidate that `completion-at-point' inserts by itself (the only match)
;; reaches the exit function without text properties; its item, and so the id that the
;; accept must carry, is found again among the completion table's candidates.
(ert-deftest codetailor-eglot-finds-the-item-of-a-bare-candidate ()
  (let* ((item '(:label "return x" :command (:command "codetailor.accepted"
                                              :arguments ["completion" "id-1"])))
         (candidate (propertize "return x" 'eglot--lsp-item item))
         (table (lambda (probe pred action)
                  (complete-with-action action (list candidate) probe pred)))
         sent)
    (should (equal (codetailor-eglot--item "return x" table) item))
    (should (null (codetailor-eglot--item "other" table)))
    (cl-letf (((symbol-function 'jsonrpc-async-request)
               (lambda (_server _method params &rest _) (push params sent))))
      (codetailor-eglot--accept 'server "return x" table))
    (should (equal (plist-get (car sent) :arguments) ["completion" "id-1"]))))

(ert-deftest codetailor-cursor-is-reported-once-it-rests-on-another-line ()
  (let ((codetailor--cursor-functions nil) (codetailor--cursor-seen nil) (reports nil))
    (codetailor--follow-cursor (lambda () (push (line-number-at-pos) reports) t))
    (with-temp-buffer
      (switch-to-buffer (current-buffer))
      (insert "one\ntwo\nthree\n")
      (goto-char (point-min))
      (execute-kbd-macro (kbd "C-n C-n")) ; two moves, as typed (post-command-hook runs)
      (should-not reports)                ; nothing before point has rested
      (let ((deadline (+ (float-time) 5)))
        (while (and (not reports) (< (float-time) deadline))
          (accept-process-output nil 0.02)))
      (should (equal reports '(3)))       ; once, where point came to rest
      (execute-kbd-macro (kbd "C-f"))     ; the same line: nothing new to report
      (should-not codetailor--cursor-timer)
      (execute-kbd-macro (kbd "C-p"))
      (should (timerp codetailor--cursor-timer))
      (cancel-timer codetailor--cursor-timer)
      (setq codetailor--cursor-timer nil))))

;; A repository's .dir-locals.el may set `eglot-workspace-configuration' without a
;; prompt (Eglot marks it safe), and may try `codetailor-settings' itself.
(ert-deftest codetailor-a-project-cannot-pick-the-engine-model-or-adapter ()
  (should (risky-local-variable-p 'codetailor-settings))
  (should (risky-local-variable-p 'codetailor-command))
  (let ((codetailor-settings '(:maxTokens 64 :engine "openai:http://gpu:8000")))
    (should (equal (codetailor--merge-settings
                    '(:maxTokens 8 :engine "openai:http://attacker:9" :model "./evil"
                      :adapter "./evil"))
                   '(:maxTokens 8 :engine "openai:http://gpu:8000")))
    (should (equal (codetailor--merge-settings '((engine . "openai:http://attacker:9")))
                   '(:maxTokens 64 :engine "openai:http://gpu:8000")))
    ;; A directory-local value (the user said yes to the prompt) keeps the user's machine keys.
    (with-temp-buffer
      (setq-local codetailor-settings '(:maxTokens 8 :engine "openai:http://attacker:9"))
      (should (equal (codetailor--settings) '(:maxTokens 8 :engine "openai:http://gpu:8000")))))
  ;; The client draws next edits itself: the server need not try one as inline text.
  (let ((codetailor-settings '(:maxTokens 8)))
    (should (equal (codetailor--initialization-options) '(:maxTokens 8 :drawsNextEdits t)))))

(ert-deftest codetailor-next-edit-picks-an-edit-for-this-version-only ()
  (let ((edit (lambda (version text)
                (list :text text :range '(:start (:line 0 :character 0) :end (:line 0 :character 1))
                      :textDocument (list :uri "file:///a.py" :version version)))))
    (should-not (codetailor-next-edit--pick '(:edits []) 3))
    (should-not (codetailor-next-edit--pick nil 3))
    (should-not (codetailor-next-edit--pick (list :edits (vector (funcall edit 2 "x"))) 3))
    (should (equal (codetailor--get (codetailor-next-edit--pick
                                     (list :edits (vector (funcall edit 2 "old") (funcall edit 3 "new")))
                                     3)
                                    :text)
                   "new"))))

(ert-deftest codetailor-next-edit-takes-tab-only-while-shown ()
  (with-temp-buffer
    (insert "def f(a):\n    return a\n")
    (let ((shown nil) (backend nil))
      (setq backend (list :params #'ignore :version (lambda () 1)
                          :request (lambda (_params callback)
                                     (funcall callback
                                              '(:edits [(:text "b" :range (:start (:line 1 :character 11)
                                                                           :end (:line 1 :character 12))
                                                               :textDocument (:uri "u" :version 1))])))
                          :notify (lambda (method _params) (push method shown))
                          :execute #'ignore
                          :region (lambda (range)
                                    (cl-flet ((at (p) (save-excursion
                                                        (goto-char (point-min))
                                                        (forward-line (plist-get p :line))
                                                        (+ (point) (plist-get p :character)))))
                                      (cons (at (plist-get range :start)) (at (plist-get range :end)))))))
      (codetailor-next-edit-enable backend)
      (goto-char (point-min))
      (should-not codetailor-next-edit-keys-mode)
      (codetailor-next-edit-request)
      (should codetailor-next-edit-keys-mode)
      (should (equal shown (list codetailor-next-edit-shown-notification)))
      (should (= (point) (point-min)))        ; shown, point kept
      (codetailor-next-edit-tab)              ; away from it: jump
      (should (equal (buffer-substring (line-beginning-position) (point)) "    return "))
      (codetailor-next-edit-tab)              ; on it: apply
      (should (equal (buffer-string) "def f(a):\n    return b\n"))
      (should-not codetailor-next-edit-keys-mode)
      (codetailor-next-edit-disable)
      (should-not (memq #'codetailor-next-edit--after-change after-change-functions)))))

(provide 'codetailor-test)
;;; codetailor-test.el ends here
