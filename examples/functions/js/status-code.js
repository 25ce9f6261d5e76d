exports.handler = (context, event, callback) => {
  // No need to import Twilio; it is globally available in Functions
  const response = new Twilio.Response();

  // Set the status code to 204 Not Content
  response.setStatusCode(204);

  return callback(null, response);
};
