// An async handler that throws before calling back: its returned promise rejects.
exports.handler = async (context, event, callback) => {
  await new Promise((resolve) => setTimeout(resolve, 5));
  throw new TypeError('async bad');
};
