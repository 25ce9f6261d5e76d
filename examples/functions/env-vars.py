# Retrieve Environment Variables.


def handler(context, event, callback):
    # Get the primary and secondary phone numbers, if set
    primary = getattr(context, "PRIMARY_PHONE_NUMBER", None) or "There is no primary number"
    secondary = getattr(context, "SECONDARY_PHONE_NUMBER", None) or "There is no secondary number!"

    # Build our response object
    response = {
        "phone_numbers": {
            "primary": primary,
            "backup": secondary,
        },
    }

    # Return the response object as JSON
    return callback(None, response)
