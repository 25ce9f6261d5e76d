exports.handler = (context, event, callback) => {
  const twiml = new Twilio.twiml.MessagingResponse();
  twiml.message({ to: context.MY_NUMBER }, `${event.From}: ${event.Body}`);
  return callback(null, twiml);
};
