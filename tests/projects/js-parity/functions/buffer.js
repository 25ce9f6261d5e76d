// A Buffer body: in --fork-process=false mode twilio-run hands it to express as is, like us.
exports.handler = (context, event, callback) => callback(null, Buffer.from([0, 1, 2, 127, 128, 255, 13, 10]));
