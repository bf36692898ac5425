/* The words every built-in page shares (sign-in, the language switch, the live badge, device
   kinds, health, ticket statuses, units), zh-CN first, English second. Linli.words() lays a
   page's own catalogue over these: a key the page has wins (a group, such as ticketStatus, is
   merged key by key). Words follow shared/spec/community.md. Keys are the same in both catalogues. */
"use strict";

window.LINLI_COMMON_I18N = Object.freeze({
  "zh-CN": Object.freeze({
    switchTo: "English",
    switchLabel: "EN",
    signIn: "登录",
    signOut: "退出",
    username: "用户名",
    password: "密码",
    signInFailed: "用户名或密码不对。",
    signInError: "登录失败，请稍后再试。",
    signInTooMany: "登录失败次数太多，请 {min} 分钟后再试。",
    loading: "正在加载…",
    loadFailed: "加载失败，请稍后刷新页面。",
    noSite: "这个账号没有可查看的社区。",
    live: "实时",
    connecting: "连接中…",
    reconnecting: "连接中断，正在重连…",
    device: "设备",
    opened: "立案",
    lastSeen: "最后上报",
    never: "从未上报",
    yes: "是",
    no: "否",
    kind: { streetlight: "路灯", elevator: "电梯", charger: "充电桩" },
    health: { ok: "正常", fault: "故障", offline: "离线", maintenance: "维修中" },
    ticketStatus: {
      open: "待签收",
      acknowledged: "已签收",
      in_progress: "维修中",
      on_hold: "暂缓",
      resolved: "已办结",
      verified: "已核查",
      closed: "已销号",
      cancelled: "已撤销"
    },
    units: { h: "时", m: "分", s: "秒" }
  }),
  en: Object.freeze({
    switchTo: "中文",
    switchLabel: "中文",
    signIn: "Sign in",
    signOut: "Sign out",
    username: "User name",
    password: "Password",
    signInFailed: "Wrong user name or password.",
    signInError: "Could not sign in. Please try again later.",
    signInTooMany: "Too many failed sign-ins. Please try again in {min} min.",
    loading: "Loading…",
    loadFailed: "Could not load. Please reload the page later.",
    noSite: "This account sees no community.",
    live: "Live",
    connecting: "Connecting…",
    reconnecting: "Connection lost, reconnecting…",
    device: "Device",
    opened: "Opened",
    lastSeen: "Last report",
    never: "Never reported",
    yes: "yes",
    no: "no",
    kind: { streetlight: "Streetlight", elevator: "Elevator", charger: "Charging pile" },
    health: { ok: "OK", fault: "Fault", offline: "Offline", maintenance: "Maintenance" },
    ticketStatus: {
      open: "Open",
      acknowledged: "Acknowledged",
      in_progress: "In progress",
      on_hold: "On hold",
      resolved: "Resolved",
      verified: "Verified",
      closed: "Closed",
      cancelled: "Cancelled"
    },
    units: { h: "h", m: "m", s: "s" }
  })
});
