"""Accounts: who may create which login (POST /users), above both auth and the people logins belong to."""
