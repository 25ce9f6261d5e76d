// !mark(6)
exports.handler = (context, event, callback) => {
  // Prepare a new messaging response object; no need to import Twilio
  const twiml = new Twilio.twiml.MessagingResponse();
  // Access incoming text information like the from number and contents off of `event`
  // Access environment variables and other runtime data from `context`
  twiml.message({ to: context.MY_NUMBER }, `${event.From}: ${event.Body}`);
  // Remember to return the TwiML as the second argument to `callback`
  return callback(null, twiml);
};
