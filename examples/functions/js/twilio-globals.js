// Initialize TwiML without needing to import Twilio
const response = new Twilio.twiml.MessagingResponse();

// Similarly for other utilities, such as Access Tokens
const AccessToken = Twilio.jwt.AccessToken;
const SyncGrant = AccessToken.SyncGrant;

// The "Twilio" fragment of the Global classes section, verbatim above (at module top level, where
// the globals are already in place). The handler replies with that TwiML and an Access Token
// carrying a Sync grant. The account and key values are placeholders.
exports.handler = (context, event, callback) => {
  const token = new AccessToken(
    "AC00000000000000000000000000000000",
    "SK00000000000000000000000000000000",
    "placeholder-api-secret-not-a-real-one",
    { identity: event.identity || "alice" }
  );
  token.addGrant(new SyncGrant({ serviceSid: "IS00000000000000000000000000000000" }));
  return callback(null, { twiml: response.toString(), token: token.toJwt() });
};
