// Builds a Twilio.Response (the Twilio.Response section of behavior.md), picked by `event.mode`.
const BIG = 4 * 1024 * 1024 + 1;

function chainResults(r) {
  const steps = [
    () => r.setStatusCode(202), () => r.setBody('x'), () => r.appendHeader('X-A', '1'),
    () => r.setHeaders({ 'X-B': '2' }), () => r.setCookie('c', '1'), () => r.removeCookie('c'),
  ];
  return steps.map((step) => step() === r);
}

function build(mode) {
  const R = Twilio.Response;
  switch (mode) {
    case 'default': return new R();
    case 'constructor': return new R({ statusCode: 201, headers: { 'X-A': '1' }, body: { a: 1 } });
    case 'chainable': return new R().setBody({ chain: chainResults(new R()) });
    case 'status-204': return new R().setStatusCode(204);
    case 'status-418': return new R().setStatusCode(418).setBody("I'm a teapot");
    case 'status-500-body': return new R().setStatusCode(500).setBody({ ok: false });
    case 'redirect': return new R().setStatusCode(302).appendHeader('Location', '/elsewhere');
    case 'body-string': return new R().setBody('plain text');
    case 'body-unicode': return new R().setBody('héllo ✓ 🎉');
    case 'body-string-custom-type':
      return new R().appendHeader('Content-Type', 'text/html; charset=utf-8').setBody('<b>bold</b>');
    case 'body-object': return new R().setBody({ everything: 'is alright' });
    case 'body-array': return new R().setBody([1, 'two', null]);
    case 'body-object-custom-type':
      return new R().appendHeader('Content-Type', 'application/vnd.api+json').setBody({ data: [] });
    case 'body-buffer':
      return new R().appendHeader('Content-Type', 'image/png')
        .setBody(Buffer.from(Array.from({ length: 512 }, (_, i) => i % 256)));
    case 'body-buffer-no-type': return new R().setBody(Buffer.from([0, 1, 2, 255, 13, 10]));
    case 'body-null': return new R().setBody(null);
    case 'multi-append':
      return new R().appendHeader('X-Multi', 'a').appendHeader('x-multi', 'b').appendHeader('X-MULTI', 'c');
    case 'append-array': return new R().appendHeader('X-List', ['a', 'b']);
    case 'append-object': return new R().appendHeader('X-Bad', { not: 'allowed' });
    case 'set-headers-replaces':
      return new R().setCookie('c', '1').appendHeader('X-Old', '1').setHeaders({ 'X-New': '2' });
    case 'set-headers-array': return new R().setHeaders({ 'X-L': ['a', 'b'], 'X-S': 's' });
    case 'set-headers-then-append': return new R().setHeaders({ 'X-A': '1' }).appendHeader('x-a', '2');
    case 'cookies':
      return new R().setCookie('session', 'abc', ['Path=/', 'HttpOnly']).setCookie('theme', 'dark');
    case 'remove-cookie':
      return new R().setCookie('a', '1').setCookie('b', '2').setCookie('a', '3').removeCookie('a');
    case 'remove-cookie-never-set': return new R().removeCookie('gone');
    case 'crlf-value':
      return new R().appendHeader('X-Good', 'ok').appendHeader('X-Bad', 'a\r\nInjected: yes').setBody('body');
    case 'lf-value':
      return new R().appendHeader('X-Good', 'ok').appendHeader('X-Bad', 'a\nInjected: yes').setBody('body');
    case 'cr-value':
      return new R().appendHeader('X-Good', 'ok').appendHeader('X-Bad', 'a\rInjected: yes').setBody('body');
    case 'lf-name':
      return new R().appendHeader('X-Good', 'ok').appendHeader('X-Bad\nInjected', 'v').setBody('body');
    case 'crlf-cookie':
      return new R().setCookie('good', '1').setCookie('bad', '1\r\nInjected: yes').setBody('body');
    case 'framing-append':
      return new R().appendHeader('Content-Length', '12345').appendHeader('Transfer-Encoding', 'x-handler-te')
        .appendHeader('Connection', 'x-handler-conn').setBody('framed by the engine');
    case 'framing-set-headers':
      return new R().setHeaders({
        'content-length': '12345', 'transfer-encoding': 'x-handler-te', connection: 'x-handler-conn',
      }).setBody('framed by the engine');
    case 'big': return new R().setBody('x'.repeat(BIG));
    case 'big-buffer': return new R().setBody(Buffer.alloc(BIG, 0x61));
    case 'exactly-4-mib': return new R().setBody(Buffer.alloc(4 * 1024 * 1024, 0x61));
    default: throw new Error(`unknown mode ${mode}`);
  }
}

exports.handler = (context, event, callback) => callback(null, build(event.mode));
