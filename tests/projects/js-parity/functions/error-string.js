exports.handler = (context, event, callback) => callback('Something went very, very wrong.');
