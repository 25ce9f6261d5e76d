exports.handler = (context, event, callback) => {
  const twiml = new Twilio.twiml.VoiceResponse();
  twiml.say({ voice: 'alice' }, `Never gonna give you up, ${event.FromCity || event.From}`);
  twiml.play('https://demo.twilio.com/docs/classic.mp3');
  return callback(null, twiml);
};
