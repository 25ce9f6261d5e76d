exports.handler = (context, event, callback) => callback(null, new Twilio.Response().setBody({ a: 1 }));
