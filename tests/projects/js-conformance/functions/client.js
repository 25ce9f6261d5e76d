// No ACCOUNT_SID / AUTH_TOKEN in this project's .env: getTwilioClient() throws, uncaught -> 500.
exports.handler = (context, event, callback) => {
  const client = context.getTwilioClient();
  return callback(null, { accountSid: client.accountSid });
};
