"""The LSP layer, the only package that imports pygls/lsprotocol: the server shell
(`server`), the handlers, transport, `$/progress`, and pygls' private API (`pygls_compat`)."""
