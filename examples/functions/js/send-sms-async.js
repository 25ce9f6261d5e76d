exports.handler = (context, event, callback) => {
  // Fetch the already initialized Twilio REST client
  const client = context.getTwilioClient();

  // Determine message details from the incoming event, with fallback values
  const from = event.From || "+15095550100";
  const to = event.To || "+15105550101";
  const body = event.Body || "Ahoy, World!";

  client.messages
    .create({ to, from, body })
    .then((result) => {
      console.log("Created message using callback");
      console.log(result.sid);
      // Callback is placed inside the successful response of the request
      return callback();
    })
    .catch((error) => {
      console.error(error);
      // Callback is also used in the catch handler to end execution on errors
      return callback(error);
    });

  // If you were to place the callback() function here, instead, then the process would
  // terminate before your API request to create a message could complete.
};
