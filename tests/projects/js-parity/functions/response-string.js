exports.handler = (context, event, callback) => callback(null, new Twilio.Response().setBody('This is fine'));
