// Twilio, Runtime and Functions are globals, usable at module top level before any handler runs.
const { greet } = require(Runtime.getFunctions()['helpers/greet'].path);
const { greet: greetViaFunctions } = require(Functions['helpers/greet'].path);

const AT_LOAD = {
  twiml: new Twilio.twiml.MessagingResponse().toString(),
  response: new Twilio.Response().constructor.name,
  functions: Object.keys(Runtime.getFunctions()).sort(),
  functionsGlobal: Object.keys(Functions).sort(),
  assets: Object.keys(Runtime.getAssets()).sort(),
  greeting: greet('top level'),
  sameViaFunctions: greet === greetViaFunctions,
};

exports.handler = (context, event, callback) => {
  const url = 'https://example.com/hook?x=1';
  const params = { Body: 'Ahoy', From: '+14444444444' };
  const { getExpectedTwilioSignature } = require('twilio/lib/webhooks/webhooks');
  const good = getExpectedTwilioSignature('a-token', url, params);
  const AccessToken = Twilio.jwt.AccessToken;
  const token = new AccessToken('AC00000000000000000000000000000000', 'SK00000000000000000000000000000000',
    'placeholder-secret', { identity: 'alice' });
  token.addGrant(new AccessToken.SyncGrant({ serviceSid: 'IS00000000000000000000000000000000' }));
  const checks = {
    MessagingResponse: typeof Twilio.twiml.MessagingResponse === 'function',
    VoiceResponse: typeof Twilio.twiml.VoiceResponse === 'function',
    FaxResponse: typeof Twilio.twiml.FaxResponse === 'function',
    AccessToken: typeof token.toJwt() === 'string',
    grants: ['SyncGrant', 'ChatGrant', 'VoiceGrant', 'VideoGrant', 'TaskRouterGrant', 'PlaybackGrant']
      .every((name) => typeof AccessToken[name] === 'function'),
    'validateRequest accepts': Twilio.validateRequest('a-token', good, url, params) === true,
    'validateRequest rejects': Twilio.validateRequest('a-token', good, url, { ...params, Body: 'x' }) === false,
  };
  const asset = Runtime.getAssets()['/my-file.txt'].open();
  const secret = Runtime.getAssets()['/secret.txt'].open();
  return callback(null, {
    checks, at_load: AT_LOAD, asset, secret, greeting: greet(event.name || 'handler'),
  });
};
