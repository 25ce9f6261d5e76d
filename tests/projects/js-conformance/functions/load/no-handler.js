// Exports no handler.
exports.somethingElse = () => 'not a handler';
