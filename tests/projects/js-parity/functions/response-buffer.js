exports.handler = (context, event, callback) => {
  const response = new Twilio.Response();
  response.appendHeader('Content-Type', 'image/png').setBody(Buffer.from([137, 80, 78, 71, 13, 10, 26, 10, 0, 255]));
  return callback(null, response);
};
