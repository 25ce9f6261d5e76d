# Soak: tries to set a cookie for every sibling service of the domain (cookie tossing).
def handler(context, event, callback):
    response = Twilio.Response()
    response.append_header("Set-Cookie", "soak=tossed; Domain=.localhost; Path=/")
    return callback(None, response.set_body("cookie tossed"))
