# Retrieve Domain from Default Environment Variables.


def handler(context, event, callback):
    # Check to see if the Domain name is null
    domain = getattr(context, "DOMAIN_NAME", None) or "No Domain available"
    # Respond with the Domain hosting this Function
    return callback(None, domain)
