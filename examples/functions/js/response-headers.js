exports.handler = (context, event, callback) => {
  // No need to import Twilio; it is globally available in Functions
  const response = new Twilio.Response();

  // Build a mapping of headers as a way to set many with one command
  const headers = {
    "Access-Control-Allow-Origin": "example.com",
    "Access-Control-Allow-Methods": "GET,PUT,POST,DELETE,OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type",
  };

  // Set headers in response
  response.setHeaders(headers);

  return callback(null, response);
};
