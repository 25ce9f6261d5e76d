exports.handler = (context, event, callback) => {
  // Access the pre-initialized Twilio REST client
  const twilioClient = context.getTwilioClient();

  // Determine message details from the incoming event, with fallback values
  const from = event.From || "+15095550100";
  const to = event.To || "+15105550101";
  const body = event.Body || "Ahoy, World!";

  twilioClient.messages
    .create({ to, from, body })
    .then((result) => {
      console.log("Created message using callback");
      console.log(result.sid);
      return callback();
    })
    .catch((error) => {
      console.error(error);
      return callback(error);
    });
};
