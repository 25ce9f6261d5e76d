// No need to import Twilio; it is globally available in Functions
const response = new Twilio.Response();

// The "Constructing a Response" fragment, verbatim above (at module top level). A response made
// once at load time is shared by every invocation, so the handler builds its own copy to send.
exports.handler = (context, event, callback) => {
  const reply = new Twilio.Response();
  reply.setStatusCode(response.statusCode).setBody("A Twilio.Response, made without importing Twilio");
  return callback(null, reply);
};
