exports.handler = (context, event, callback) => {
  // No need to import Twilio; it is globally available in Functions
  const response = new Twilio.Response();

  response
    // Set the status code to 200 OK
    .setStatusCode(200)
    // Set the response body
    .setBody("This is fine");

  return callback(null, response);
};
