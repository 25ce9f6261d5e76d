// With ACCOUNT_SID / AUTH_TOKEN in .env, getTwilioClient() builds the official client (no request is made).
exports.handler = (context, event, callback) => {
  const client = context.getTwilioClient();
  return callback(null, { accountSid: client.accountSid, hasMessages: typeof client.messages.create === 'function' });
};
