exports.handler = (context, event, callback) => {
  const response = new Twilio.Response();
  response.setStatusCode(301).appendHeader('Location', 'https://twilio.com');
  return callback(null, response);
};
