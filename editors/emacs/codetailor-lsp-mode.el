;;; codetailor-lsp-mode.el --- Codetailor inline completions with lsp-mode -*- lexical-binding: t; -*-

;; Ghost-text completions from `codetailor serve' through lsp-mode (9.0.1 or
;; newer has `lsp-inline-completion-mode').  Codetailor runs as an add-on
;; server, next to the language's own server (pyright, gopls...).
;;
;; Load it from your init file:
;;   (load "/path/to/codetailor/editors/emacs/codetailor-lsp-mode.el")
;;   (setq codetailor-command '("/path/to/codetailor/.venv/bin/codetailor" "serve"))
;;
;; While a suggestion shows: C-<return> accepts it, C-n / C-p cycle, C-g dismisses.
;; M-x lsp-inline-completion-display asks for one now.

;;; Code:

(require 'lsp-mode)

(defgroup codetailor nil "Local code completion with Codetailor." :group 'tools)

(defcustom codetailor-command '("codetailor" "serve")
  "The command that runs the Codetailor server on stdio."
  :type '(repeat string))

(defcustom codetailor-settings
  '(:maxTokens 64 :multiline "auto" :timeBudgetMs 2000 :enable t)
  "Server settings, sent as initializationOptions (camelCase, as the server names them).
Also :model, :adapter, :device, :dtype, :promptFormat."
  :type 'plist)

(lsp-register-client
 (make-lsp-client
  :new-connection (lsp-stdio-connection (lambda () codetailor-command))
  :activation-fn (lambda (_file-name major-mode)
                   (provided-mode-derived-p major-mode 'prog-mode))
  :add-on? t                            ; alongside the language's own server
  :priority -2
  :server-id 'codetailor
  :initialization-options (lambda () codetailor-settings)))

;; Ask for a suggestion after 0.3 s of idle time in buffers lsp-mode manages.
(setq lsp-inline-completion-idle-delay 0.3)
(add-hook 'lsp-mode-hook #'lsp-inline-completion-mode)

(provide 'codetailor-lsp-mode)
;;; codetailor-lsp-mode.el ends here
