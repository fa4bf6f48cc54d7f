"""The team server: a repository over HTTP, with scoped tokens and an audit trail."""
