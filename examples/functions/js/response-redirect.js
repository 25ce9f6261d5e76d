exports.handler = (context, event, callback) => {
  // No need to import Twilio; it is globally available in Functions
  const response = new Twilio.Response();

  response
    // Set the status code to 301 Redirect
    .setStatusCode(301)
    // Set the Location header for redirect
    .appendHeader("Location", "https://twilio.com");

  return callback(null, response);
};
