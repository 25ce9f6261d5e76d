const isNumber = require('is-number');

exports.handler = (context, event, callback) => callback(null, { value: event.value, isNumber: isNumber(event.value) });
