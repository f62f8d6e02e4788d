"""Privacy: pseudonymous user ids (a keyed hash), personal columns kept out of the lake,
the vault, and the check that no raw id or personal value reached the lake or MLflow."""
