exports.shout = (word) => `${word.toUpperCase()}!`;
exports.handler = (context, event, callback) => callback(null, 'private');
