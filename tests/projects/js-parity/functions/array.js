exports.handler = (context, event, callback) => callback(null, [1, 'two', null, { x: true }]);
