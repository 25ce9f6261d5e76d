exports.handler = (context, event, callback) => {
  throw new RangeError('handler blew up');
};
