// Never calls back: the engine answers 504 at the time limit; twilio-run never answers.
exports.handler = (context, event, callback) => {};
