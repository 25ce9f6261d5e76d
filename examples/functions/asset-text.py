# Runtime: read a private or public Asset's text through the Runtime Client.
#
# The original sample is a fragment (no handler); this function wraps it and replies with
# the text so the result can be seen.


def handler(context, event, callback):
    text = Runtime.get_assets()["/my-file.txt"].open()
    print("Your file contents: " + text)
    return callback(None, text)
