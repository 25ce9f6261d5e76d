// Realistic: an SMS webhook reply built as TwiML from the form parameters Twilio posts.
exports.handler = function (context, event, callback) {
  const twiml = new Twilio.twiml.MessagingResponse();
  twiml.message(`Thanks ${event.From}, we got: ${event.Body}`);
  return callback(null, twiml);
};
