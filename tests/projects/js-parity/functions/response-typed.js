// A Twilio.Response whose Content-Type already names its charset, with a string body.
exports.handler = (context, event, callback) => {
  const response = new Twilio.Response();
  response.setStatusCode(201).appendHeader('Content-Type', 'text/plain; charset=utf-8').setBody('created');
  return callback(null, response);
};
