exports.handler = (context, event, callback) => {
  // No need to import Twilio; it is globally available in Functions
  const response = new Twilio.Response();

  response
    // Set the status code to 200 OK
    .setStatusCode(200)
    // Set the Content-Type Header
    .appendHeader("Content-Type", "application/json")
    // Set the response body
    .setBody({
      everything: "is alright",
    });

  return callback(null, response);
};
