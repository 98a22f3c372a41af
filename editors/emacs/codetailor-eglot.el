;;; codetailor-eglot.el --- Codetailor completions with Eglot -*- lexical-binding: t; -*-

;; Eglot talks to one server per buffer, so with Eglot Codetailor replaces the
;; language's own server; its completion arrives through `completion-at-point'
;; as one candidate (the server's textDocument/completion). Prefer
;; codetailor-lsp-mode.el to keep your language server and get ghost text.
;;
;; Load it from your init file, then M-x eglot in a buffer:
;;   (load "/path/to/codetailor/editors/emacs/codetailor-eglot.el")

;;; Code:

(require 'eglot)

(defvar codetailor-eglot-modes '(python-mode python-ts-mode js-mode js-ts-mode
                                 typescript-ts-mode go-mode go-ts-mode rust-mode
                                 rust-ts-mode c-mode c-ts-mode c++-mode c++-ts-mode)
  "Major modes in which Eglot starts Codetailor.")

(add-to-list 'eglot-server-programs
             `(,codetailor-eglot-modes
               . ("codetailor" "serve"   ; or "/path/to/codetailor/.venv/bin/codetailor"
                  :initializationOptions (:maxTokens 64 :multiline "auto" :timeBudgetMs 2000))))

;; Settings changed while the server runs (M-x eglot-signal-didChangeConfiguration
;; after editing this) reach it as workspace/didChangeConfiguration:
(setq-default eglot-workspace-configuration
              '(:codetailor (:enable t :maxTokens 64)))

(provide 'codetailor-eglot)
;;; codetailor-eglot.el ends here
