"""gunicorn settings for `make run`; override any of them with GUNICORN_CMD_ARGS."""

bind = "127.0.0.1:8000"
workers = 2
threads = 4
timeout = 60
# Paths only, never query strings: some carry short-lived tokens.
accesslog = "-"
access_log_format = '%(h)s %(t)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'
