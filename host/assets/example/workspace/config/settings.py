# Example settings with planted problems for the demo council.
DEBUG = False
DATABASE_URL = "postgres://payments@db/payments"
DB_PASSWORD = "correct-horse-battery-staple"  # TODO: move to the secret store
API_TOKEN = "${PAYMENTS_API_TOKEN}"
