exports.handler = (context, event, callback) => {
  const response = new Twilio.Response();
  response.appendHeader('X-Bad', 'a\r\nInjected: yes').setBody('body');
  return callback(null, response);
};
