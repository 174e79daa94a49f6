// The console's one script, served by the binary (the Content-Security-Policy allows no
// other). It follows a running job (a rebuild, an audit) in place by polling the console's
// JSON, and reloads the page when the job has ended so its result shows. Every page works
// without it: a "refresh" link stands in, which this script hides.
(function () {
  'use strict';
  document.querySelectorAll('.noscript').forEach(function (element) {
    element.hidden = true;
  });
  var box = document.querySelector('[data-poll]');
  if (!box || box.getAttribute('data-state') !== 'running') {
    return;
  }
  function show(field, value) {
    var element = box.querySelector('[data-field="' + field + '"]');
    if (element && value !== undefined && value !== null) {
      element.textContent = String(value);
    }
  }
  function tick() {
    fetch(box.getAttribute('data-poll'), {
      credentials: 'same-origin',
      headers: { Accept: 'application/json' }
    })
      .then(function (response) {
        if (!response.ok) {
          throw new Error('HTTP ' + response.status);
        }
        return response.json();
      })
      .then(function (job) {
        // A rebuild says position/head; an audit job progress.events_done/events_total.
        var done = job.progress ? job.progress.events_done : job.position;
        var total = job.progress ? job.progress.events_total : job.head;
        show('state', job.state);
        show('position', done);
        show('head', total);
        show('events_done', done);
        show('events_total', total);
        var bar = box.querySelector('progress');
        if (bar && typeof total === 'number') {
          bar.max = Math.max(total, 1);
          bar.value = Math.min(done, bar.max);
        }
        var state = box.querySelector('[data-field="state"]');
        if (state) {
          state.setAttribute('data-status', job.state);
        }
        box.setAttribute('data-state', job.state);
        if (job.state === 'running') {
          window.setTimeout(tick, 500);
        } else {
          window.location.reload();
        }
      })
      .catch(function () {
        window.setTimeout(tick, 2000);
      });
  }
  window.setTimeout(tick, 300);
})();
