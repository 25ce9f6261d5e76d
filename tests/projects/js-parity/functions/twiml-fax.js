exports.handler = (context, event, callback) => {
  const twiml = new Twilio.twiml.FaxResponse();
  twiml.receive({ action: '/fax/received' });
  return callback(null, twiml);
};
