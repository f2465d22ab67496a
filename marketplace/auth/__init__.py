"""Users, roles, bearer tokens and cookie sessions."""
