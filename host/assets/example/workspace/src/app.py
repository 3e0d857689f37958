from config import settings


def charge(amount):
    # TODO: validate the amount
    # FIXME: no idempotency key
    return {"charged": amount, "debug": settings.DEBUG}


def refund(amount):
    # XXX: refunds are not audited
    return {"refunded": amount}
