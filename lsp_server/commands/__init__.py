"""What the commands (`complete`, `eval`) share beyond their options: the adapter each uses
(adapter.py), chosen by the session's own rule from the registry and the shipped adapter.
Neither pure (it reads the registry and git) nor torch: a room between the two."""
