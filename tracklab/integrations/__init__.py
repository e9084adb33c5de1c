"""Framework hooks, one module per framework, each imported only by a script that uses it:
``tracklab.integrations.lightning``, ``.transformers``, ``.keras``. None of them is loaded by
``import tracklab``; each needs its framework installed (and says so when it is not)."""
