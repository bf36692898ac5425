/* Two catalogues of the resident page's words: zh-CN first, English second.
   Words follow shared/spec/community.md. Keys are the same in both catalogues. */
"use strict";

window.LINLI_I18N = Object.freeze({
  "zh-CN": Object.freeze({
    title: "社区设施状态",
    titleOf: "{site} · 设施状态",
    updated: "更新于",
    refresh: "刷新",
    loading: "正在加载…",
    loadFailed: "加载失败，请稍后点“刷新”重试。",
    noSite: "没有可显示的社区。",
    summary: "概况",
    plan: "路灯分布图",
    repairs: "维修进度",
    noRepairs: "目前没有维修中的问题。",
    streetlights: "路灯",
    elevators: "电梯",
    chargers: "充电桩",
    empty: "暂无设备。",
    footer: "设施有问题？请联系物业或社区网格员。",
    switchTo: "English",
    switchLabel: "EN",
    openedAt: "立案时间",
    state: {
      streetlight: { on: "亮", off: "灭", fault: "故障", repairing: "维修中" },
      elevator: { in_service: "运行中", out_of_service: "停用" },
      charger: { available: "空闲", in_use: "使用中", unavailable: "不可用" }
    },
    ticketStatus: {
      open: "已立案",
      acknowledged: "已签收",
      in_progress: "维修中",
      on_hold: "暂缓处理",
      resolved: "已办结",
      verified: "已核查",
      closed: "已销号",
      cancelled: "已撤销"
    }
  }),
  en: Object.freeze({
    title: "Community facilities",
    titleOf: "{site} · Facilities",
    updated: "Updated",
    refresh: "Refresh",
    loading: "Loading…",
    loadFailed: "Could not load. Please tap Refresh to try again.",
    noSite: "No community to show.",
    summary: "Summary",
    plan: "Streetlight map",
    repairs: "Repairs in progress",
    noRepairs: "No repairs under way.",
    streetlights: "Streetlights",
    elevators: "Elevators",
    chargers: "Charging piles",
    empty: "No devices.",
    footer: "Something wrong? Contact the property office or your grid officer.",
    switchTo: "中文",
    switchLabel: "中文",
    openedAt: "Opened",
    state: {
      streetlight: { on: "On", off: "Off", fault: "Fault", repairing: "Being repaired" },
      elevator: { in_service: "In service", out_of_service: "Out of service" },
      charger: { available: "Available", in_use: "In use", unavailable: "Unavailable" }
    },
    ticketStatus: {
      open: "Reported",
      acknowledged: "Acknowledged",
      in_progress: "Being repaired",
      on_hold: "On hold",
      resolved: "Fixed",
      verified: "Verified",
      closed: "Closed",
      cancelled: "Cancelled"
    }
  })
});
